//! `tidelog bench`: producer and consumer processes over a temporary log.
//!
//! Every scenario runs as separate OS processes: this binary re-runs itself
//! as `tidelog bench-worker`. Workers report on stdout with lines starting
//! `@@`; the parent starts them together by writing to their stdin, so
//! process start-up and log creation are not timed.

use std::error::Error as StdError;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};

use rustix::time::{clock_gettime, ClockId};
use tidelog::{Options, WaitStrategy};

type Result<T> = std::result::Result<T, Box<dyn StdError>>;

/// Arguments of `tidelog bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Records per scenario.
    #[arg(long, default_value_t = 5_000_000)]
    count: u64,
    /// Record size in bytes (at least 8: each record carries its sequence number).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Directory in which to create the temporary logs (default: the system's).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Segment capacity of the benchmark logs, in MiB.
    #[arg(long, default_value_t = 1024)]
    segment_mib: u64,
}

/// Arguments of the hidden `tidelog bench-worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// What this process does.
    #[arg(long)]
    role: String,
    /// The log directory.
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    count: u64,
    #[arg(long)]
    size: usize,
    #[arg(long)]
    segment_mib: u64,
}

/// Nanoseconds on the system-wide monotonic clock, comparable across
/// processes.
fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn options(segment_mib: u64) -> Options {
    Options::new().segment_capacity(segment_mib << 20)
}

struct Worker {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Worker {
    fn spawn(role: &str, dir: &Path, args: &Args) -> Result<Worker> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("bench-worker")
            .args(["--role", role])
            .arg("--dir")
            .arg(dir)
            .args(["--count", &args.count.to_string()])
            .args(["--size", &args.size.to_string()])
            .args(["--segment-mib", &args.segment_mib.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut w = Worker { child, out };
        let ready = w.hear()?;
        if ready != "ready" {
            return Err(format!("{role} worker said {ready:?}").into());
        }
        Ok(w)
    }

    fn hear(&mut self) -> Result<String> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.out.read_line(&mut line)? == 0 {
                return Err("worker exited early".into());
            }
            if let Some(msg) = line.trim_end().strip_prefix("@@ ") {
                return Ok(msg.to_owned());
            }
        }
    }

    fn go(&mut self) -> Result<()> {
        let stdin = self.child.stdin.as_mut().ok_or("no stdin")?;
        stdin.write_all(b"g")?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits for the worker's "done" line: two timestamps.
    fn finish(mut self) -> Result<(u64, u64)> {
        let msg = self.hear()?;
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("worker failed: {status}").into());
        }
        let mut it = msg.strip_prefix("done ").ok_or("bad report")?.split(' ');
        let a = it.next().ok_or("bad report")?.parse()?;
        let b = it.next().ok_or("bad report")?.parse()?;
        Ok((a, b))
    }
}

struct Row {
    scenario: String,
    records: u64,
    size: usize,
    nanos: u64,
}

impl Row {
    fn print(&self) {
        let secs = self.nanos as f64 / 1e9;
        let rate = self.records as f64 / secs;
        let mbps = rate * self.size as f64 / 1e6;
        println!(
            "{:<34} {:>11} {:>7} {:>10.3} {:>12.2} M {:>10.1}",
            self.scenario,
            self.records,
            self.size,
            secs,
            rate / 1e6,
            mbps
        );
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.size < 8 {
        return Err("--size must be at least 8".into());
    }
    let tmp = match &args.dir {
        Some(d) => tempfile::Builder::new()
            .prefix("tidelog-bench-")
            .tempdir_in(d)?,
        None => tempfile::Builder::new()
            .prefix("tidelog-bench-")
            .tempdir()?,
    };
    println!(
        "tidelog bench: {} records of {} B per scenario, logs under {}",
        args.count,
        args.size,
        tmp.path().display()
    );
    println!(
        "{:<34} {:>11} {:>7} {:>10} {:>14} {:>10}",
        "scenario", "records", "bytes", "seconds", "records/s", "MB/s"
    );

    // One appender alone: the in-process append rate.
    let dir = tmp.path().join("append");
    let mut w = Worker::spawn("append", &dir, &args)?;
    w.go()?;
    let (start, end) = w.finish()?;
    Row {
        scenario: "append, 1 appender, no reader".into(),
        records: args.count,
        size: args.size,
        nanos: end - start,
    }
    .print();

    // One producer process, one consumer process.
    let dir = tmp.path().join("pc");
    drop(options(args.segment_mib).open(&dir)?);
    let mut consumer = Worker::spawn("consume", &dir, &args)?;
    let mut producer = Worker::spawn("produce", &dir, &args)?;
    consumer.go()?;
    producer.go()?;
    let (p_start, _) = producer.finish()?;
    let (_, c_end) = consumer.finish()?;
    Row {
        scenario: "1 producer -> 1 consumer (spin)".into(),
        records: args.count,
        size: args.size,
        nanos: c_end.saturating_sub(p_start),
    }
    .print();
    Ok(ExitCode::SUCCESS)
}

fn say(msg: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ {msg}")?;
    out.flush()?;
    Ok(())
}

fn wait_for_go() -> Result<()> {
    let mut b = [0u8];
    std::io::Read::read_exact(&mut std::io::stdin(), &mut b)?;
    Ok(())
}

pub fn worker(args: WorkerArgs) -> Result<ExitCode> {
    let opts = options(args.segment_mib);
    match args.role.as_str() {
        "append" | "produce" => {
            let log = opts.open(&args.dir)?;
            let mut appender = log.appender()?;
            let mut buf = vec![0u8; args.size];
            say("ready")?;
            wait_for_go()?;
            let start = now_ns();
            for seq in 0..args.count {
                buf[..8].copy_from_slice(&seq.to_le_bytes());
                appender.append(&buf)?;
            }
            let end = now_ns();
            say(&format!("done {start} {end}"))?;
        }
        "consume" => {
            let log = opts.open(&args.dir)?;
            let mut reader = log.reader().with_wait_strategy(WaitStrategy::Spin);
            say("ready")?;
            wait_for_go()?;
            let start = now_ns();
            for seq in 0..args.count {
                let r = reader.next_blocking()?;
                let mut n = [0u8; 8];
                n.copy_from_slice(&r[..8]);
                if u64::from_le_bytes(n) != seq || r.len() != args.size {
                    return Err(format!("record {seq} is wrong").into());
                }
            }
            let end = now_ns();
            say(&format!("done {start} {end}"))?;
        }
        other => return Err(format!("unknown worker role {other}").into()),
    }
    Ok(ExitCode::SUCCESS)
}
