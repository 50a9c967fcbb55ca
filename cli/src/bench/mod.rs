//! `tidelog bench`: every scenario as separate OS processes, side by side
//! with a pipe, a Unix domain socket and the physical limit, in one run.
//!
//! The parent re-runs this binary as `tidelog bench-worker` for every
//! producer and consumer, waits until all of them are set up, starts them
//! together, and times from the first producer's start to the last
//! consumer's end on the system-wide monotonic clock.

mod durable;
mod nats;
mod plot;
mod raw;
mod stats;
mod worker;

use std::error::Error as StdError;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};

use serde::Serialize;

pub use durable::DurableWorkerArgs;
use stats::{human_ns, Latency};
pub use worker::WorkerArgs;
use worker::{tidelog_options, RECORD_HEADER};

type Result<T> = std::result::Result<T, Box<dyn StdError>>;

/// Arguments of `tidelog bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Scenarios to run, comma-separated: throughput, multi, large, group,
    /// commit, retention, latency, durability, nats or all (all but
    /// durability and nats). (group: a producer fills a log, then 1, 2 and 4
    /// member processes of one consumer group claim, check and acknowledge
    /// every record; timed from the members' start to their end. commit: a
    /// durable consumer's commit, in process. retention: deleting a full
    /// segment while a producer and a reader process run.)
    #[arg(long, value_delimiter = ',', default_value = "all")]
    scenario: Vec<String>,
    /// Record size in bytes for the throughput, multi and latency scenarios
    /// (at least 24: id, sequence number and send time).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Records per tidelog and raw throughput run (pipe and socket runs send
    /// a fifth of it: they are an order of magnitude slower).
    #[arg(long, default_value_t = 5_000_000)]
    count: u64,
    /// Record size of the large-record scenario.
    #[arg(long, default_value_t = 1 << 20)]
    large_size: usize,
    /// Records per large-record run.
    #[arg(long, default_value_t = 500)]
    large_count: u64,
    /// Runs of each throughput scenario; the table shows the median. (The
    /// first write to memory the virtual machine has not touched lately
    /// costs several times more than later writes, so single runs vary.)
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Records per second sent in the latency scenario.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Seconds each latency run lasts.
    #[arg(long, default_value_t = 2.0)]
    latency_seconds: f64,
    /// Producer processes of the multi scenario (with --consumers; default:
    /// two runs, 4 -> 1 and 2 -> 2).
    #[arg(long, requires = "consumers")]
    producers: Option<u32>,
    /// Consumer processes of the multi scenario; each reads every record.
    #[arg(long, requires = "producers")]
    consumers: Option<u32>,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Draw the latency distributions into this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Directory in which to create the temporary logs (default: the
    /// system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Segment capacity of the benchmark logs, in MiB.
    #[arg(long, default_value_t = 1024)]
    segment_mib: u64,
    /// MiB ahead of each tidelog producer kept locked in memory
    /// (`Options::lock_in_memory`; 0, the default: none).
    #[arg(long, default_value_t = 0)]
    lock_mib: u64,
    /// Do not pin the producer and consumer of 1 -> 1 runs to separate CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Run the durability scenario (also `--scenario durability`; not part
    /// of `all`): acknowledgements per second under each durability policy
    /// with 1, 4 and 16 appender threads and processes, beside one
    /// fdatasync per append.
    #[arg(long)]
    durability: bool,
    /// Seconds each durability run lasts.
    #[arg(long, default_value_t = 1.0)]
    durability_seconds: f64,
    /// Records per run of the nats scenario (`--scenario nats`; not part of
    /// `all`: it starts a local nats-server): `tidelog forward` beside a
    /// plain async-nats JetStream publisher, 64 B and 1 KiB records.
    #[arg(long, default_value_t = 200_000)]
    nats_count: u64,
    /// Publishes in flight in the nats scenario, for both.
    #[arg(long, default_value_t = 256)]
    nats_window: usize,
}

pub fn worker(args: WorkerArgs) -> Result<ExitCode> {
    worker::run(args)
}

pub fn durable_worker(args: DurableWorkerArgs) -> Result<ExitCode> {
    durable::worker(args)
}

/// One run: what to start.
#[derive(Debug, Clone)]
struct Spec {
    transport: &'static str,
    producers: u32,
    consumers: u32,
    count: u64,
    size: usize,
    rate: u64,
    wait: &'static str,
}

/// One throughput row.
#[derive(Debug, Clone, Serialize)]
struct Row {
    scenario: String,
    transport: String,
    producers: u32,
    consumers: u32,
    size: usize,
    records: u64,
    /// Median of the runs.
    seconds: f64,
    records_per_sec: f64,
    mb_per_sec: f64,
    /// Records per second of every run, in the order they ran.
    runs: Vec<f64>,
    vs_pipe: Option<f64>,
    vs_limit: Option<f64>,
}

/// One latency row.
#[derive(Debug, Clone, Serialize)]
struct LatencyRow {
    transport: String,
    wait: String,
    size: usize,
    rate: u64,
    latency: Latency,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cpus: usize,
    kernel: String,
    filesystem: String,
    log_dir: String,
}

/// A single measured figure of the queue scenarios.
#[derive(Debug, Clone, Serialize)]
struct Figure {
    scenario: String,
    name: String,
    value: f64,
    unit: String,
}

impl Figure {
    pub(super) fn new(scenario: &str, name: &str, value: f64, unit: &str) -> Self {
        Self {
            scenario: scenario.into(),
            name: name.into(),
            value,
            unit: unit.into(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    throughput: Vec<Row>,
    latency: Vec<LatencyRow>,
    figures: Vec<Figure>,
}

struct Proc {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Proc {
    fn hear(&mut self) -> Result<String> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.out.read_line(&mut line)? == 0 {
                let status = self.child.wait()?;
                return Err(format!("benchmark worker exited early ({status})").into());
            }
            if let Some(msg) = line.trim_end().strip_prefix("@@ ") {
                return Ok(msg.to_owned());
            }
        }
    }

    fn go(&mut self) -> Result<()> {
        let stdin = self.child.stdin.as_mut().ok_or("worker has no stdin")?;
        stdin.write_all(b"g")?;
        stdin.flush()?;
        Ok(())
    }

    /// The worker's "done" timestamps, and its latency report if any.
    fn finish(mut self) -> Result<(u64, u64, Option<Latency>)> {
        let done = self.hear()?;
        let mut it = done
            .strip_prefix("done ")
            .ok_or("bad worker report")?
            .split(' ');
        let start = it.next().ok_or("bad worker report")?.parse()?;
        let end = it.next().ok_or("bad worker report")?.parse()?;
        let mut latency = None;
        if let Ok(line) = self.hear() {
            latency = line.strip_prefix("latency ").and_then(Latency::decode);
        }
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("benchmark worker failed ({status})").into());
        }
        Ok((start, end, latency))
    }
}

struct Bench {
    args: Args,
    tmp: tempfile::TempDir,
    runs: usize,
    total: usize,
    progress: bool,
}

impl Bench {
    /// Starts a worker with the run's common arguments, `opts` (name,
    /// value) and bare `flags`, and waits until it is ready.
    fn spawn(
        &self,
        role: &str,
        spec: &Spec,
        path: &Path,
        opts: &[(&str, String)],
        flags: &[&str],
    ) -> Result<Proc> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("bench-worker")
            .args([
                "--role",
                role,
                "--transport",
                spec.transport,
                "--wait",
                spec.wait,
            ])
            .arg("--path")
            .arg(path)
            .args(["--producers", &spec.producers.to_string()])
            .args(["--size", &spec.size.to_string()])
            .args(["--rate", &spec.rate.to_string()])
            .args(["--segment-mib", &self.args.segment_mib.to_string()])
            .args(["--lock-mib", &self.args.lock_mib.to_string()])
            .args(flags);
        for (k, v) in opts {
            cmd.arg(format!("--{k}")).arg(v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut p = Proc { child, out };
        if p.hear()? != "ready" {
            return Err(format!("{role} worker did not get ready").into());
        }
        Ok(p)
    }

    fn progress(&mut self, label: &str) {
        self.runs += 1;
        if self.progress {
            eprint!("\r\x1b[K[{}/{}] {label}", self.runs, self.total);
            let _ = std::io::stderr().flush();
        }
    }

    /// Runs one scenario: returns the elapsed nanoseconds and the first
    /// consumer's latency report.
    fn run(&mut self, spec: &Spec, label: &str) -> Result<(u64, Option<Latency>)> {
        if spec.transport == "group" {
            return Ok((self.run_group(spec, label)?, None));
        }
        self.progress(label);
        let path = self.tmp.path().join(format!("run{}", self.runs));
        let per_producer = spec.count / u64::from(spec.producers);
        let capacity =
            (per_producer * u64::from(spec.producers) * spec.size as u64).next_multiple_of(1 << 20);
        match spec.transport {
            "tidelog" => drop(tidelog_options(self.args.segment_mib).open(&path)?),
            "pipe" => rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
                0,
            )?,
            "raw" => raw::create(&path)?,
            _ => {}
        }
        let pin = !self.args.no_pin && spec.producers == 1 && spec.consumers <= 1;
        let cpu = |n: usize| -> Vec<(&str, String)> {
            if pin {
                vec![("cpu", n.to_string())]
            } else {
                Vec::new()
            }
        };
        let total = per_producer * u64::from(spec.producers);
        let mut consumers = Vec::new();
        let flags: &[&str] = if spec.rate > 0 { &["--latency"] } else { &[] };
        for _ in 0..spec.consumers {
            let mut opts = cpu(1);
            opts.push(("count", total.to_string()));
            opts.push(("raw-capacity", capacity.to_string()));
            consumers.push(self.spawn("consumer", spec, &path, &opts, flags)?);
        }
        let mut producers = Vec::new();
        for id in 0..spec.producers {
            let mut opts = cpu(0);
            opts.push(("id", id.to_string()));
            opts.push(("count", per_producer.to_string()));
            opts.push(("raw-capacity", capacity.to_string()));
            producers.push(self.spawn("producer", spec, &path, &opts, &[])?);
        }
        for c in &mut consumers {
            c.go()?;
        }
        for p in &mut producers {
            p.go()?;
        }
        let mut start = u64::MAX;
        let mut end = 0;
        let mut latency = None;
        for p in producers {
            let (s, e, l) = p.finish()?;
            start = start.min(s);
            if spec.consumers == 0 {
                end = end.max(e);
            }
            latency = latency.or(l);
        }
        for c in consumers {
            let (_, e, l) = c.finish()?;
            end = end.max(e);
            latency = latency.or(l);
        }
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            let _ = std::fs::remove_file(&path);
        }
        Ok((end.saturating_sub(start), latency))
    }

    /// Runs one consumer-group dispatch: a producer fills a log with
    /// `spec.count` records (not timed), then `spec.consumers` member
    /// processes of one group claim, check and acknowledge every record in
    /// batches of 64; timed from the first member's start to the last
    /// one's end. The members' bitmaps must be disjoint and cover every
    /// record.
    fn run_group(&mut self, spec: &Spec, label: &str) -> Result<u64> {
        self.progress(label);
        let path = self.tmp.path().join(format!("run{}", self.runs));
        tidelog_options(self.args.segment_mib).open(&path)?;
        let fill = Spec {
            transport: "tidelog",
            ..spec.clone()
        };
        let mut producer = self.spawn(
            "producer",
            &fill,
            &path,
            &[("id", "0".into()), ("count", spec.count.to_string())],
            &[],
        )?;
        producer.go()?;
        producer.finish()?;
        let mut members = Vec::new();
        for id in 0..spec.consumers {
            let opts = [
                ("id", id.to_string()),
                ("count", spec.count.to_string()),
                ("batch", "64".to_string()),
            ];
            members.push(self.spawn("member", spec, &path, &opts, &[])?);
        }
        for m in &mut members {
            m.go()?;
        }
        let (mut start, mut end) = (u64::MAX, 0);
        for m in members {
            let (s, e, _) = m.finish()?;
            start = start.min(s);
            end = end.max(e);
        }
        let mut union = vec![0u8; spec.count.div_ceil(64) as usize * 8];
        for id in 0..spec.consumers {
            let file = worker::member_file(&path, id);
            let bits = std::fs::read(&file)?;
            if bits.len() != union.len() {
                return Err("a member's bitmap has the wrong size".into());
            }
            for (u, b) in union.iter_mut().zip(&bits) {
                if *u & *b != 0 {
                    return Err("a record was acknowledged by two members".into());
                }
                *u |= *b;
            }
            std::fs::remove_file(&file)?;
        }
        let acked: u64 = union.iter().map(|b| u64::from(b.count_ones())).sum();
        if acked != spec.count {
            return Err(format!("{acked} of {} records acknowledged", spec.count).into());
        }
        std::fs::remove_dir_all(&path)?;
        Ok(end.saturating_sub(start))
    }

    /// Retention of a full segment while a producer process appends and a
    /// reader process reads: the time `apply_retention` takes, and the
    /// appends per second in the 300 ms before it, during it and in the
    /// 300 ms after it (from the log's end position, in this process).
    fn retention_figures(&mut self) -> Result<Vec<Figure>> {
        self.progress("retention of a full segment");
        let size = self.args.size;
        let segment = self.args.segment_mib << 20;
        // Frame header and the record's append time, then the record.
        let frame = (size as u64 + 16).next_multiple_of(8);
        // Enough to fill the first segment, and to go on appending for as
        // long again after.
        let count = segment / frame * 3;
        let spec = Spec {
            transport: "tidelog",
            producers: 1,
            consumers: 1,
            count,
            size,
            rate: 0,
            wait: "spin-park",
        };
        let path = self.tmp.path().join("retention");
        let log = tidelog_options(self.args.segment_mib).open(&path)?;
        let mut consumer = self.spawn(
            "consumer",
            &spec,
            &path,
            &[("count", count.to_string())],
            &[],
        )?;
        let mut producer = self.spawn(
            "producer",
            &spec,
            &path,
            &[("id", "0".into()), ("count", count.to_string())],
            &[],
        )?;
        consumer.go()?;
        producer.go()?;
        while log.segments()?.len() < 2 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let rate = |from: (u64, std::time::Instant), to: (u64, std::time::Instant)| {
            (to.0 - from.0) as f64 / frame as f64 / (to.1 - from.1).as_secs_f64()
        };
        let sample = || -> Result<(u64, std::time::Instant)> {
            Ok((log.end_position()?.get(), std::time::Instant::now()))
        };
        let window = std::time::Duration::from_millis(300);
        let a = sample()?;
        std::thread::sleep(window);
        let b = sample()?;
        let report = log.apply_retention_with(tidelog::Retention::new().max_bytes(1), false)?;
        let c = sample()?;
        std::thread::sleep(window);
        let d = sample()?;
        producer.finish()?;
        consumer.finish()?;
        if report.segments_deleted == 0 {
            return Err("retention deleted no segment".into());
        }
        drop(log);
        std::fs::remove_dir_all(&path)?;
        let seg = fmt_size(segment as usize);
        let n = report.segments_deleted;
        Ok(vec![
            Figure::new(
                "retention",
                &format!("retire {n} full {seg} segment(s) (unlink, directory fsync)"),
                (c.1 - b.1).as_secs_f64() * 1e3,
                "ms",
            ),
            Figure::new(
                "retention",
                "appends/s in the 300 ms before",
                rate(a, b),
                "records/s",
            ),
            Figure::new("retention", "appends/s during it", rate(b, c), "records/s"),
            Figure::new(
                "retention",
                "appends/s in the 300 ms after",
                rate(c, d),
                "records/s",
            ),
        ])
    }

    /// Runs each spec of a group `repeat` times, interleaved (so that the
    /// transports compared meet the same machine state), and reports the
    /// median of each.
    fn throughput_group(&mut self, scenario: &str, group: &[(Spec, &str)]) -> Result<Vec<Row>> {
        // One unmeasured run first: in a virtual machine that hands freed
        // memory back to its host, the first write to memory not used in
        // the last seconds costs a host page fault (several microseconds a
        // page). Without this, whichever transport runs first pays for it.
        if let Some((spec, label)) = group.first() {
            self.total += 1;
            self.run(spec, &format!("{label} (warm-up)"))?;
        }
        let mut rates = vec![Vec::new(); group.len()];
        for rep in 0..self.args.repeat.max(1) {
            for (i, (spec, label)) in group.iter().enumerate() {
                let (nanos, _) =
                    self.run(spec, &format!("{label} ({}/{})", rep + 1, self.args.repeat))?;
                let records = spec.count / u64::from(spec.producers) * u64::from(spec.producers);
                rates[i].push(records as f64 / (nanos as f64 / 1e9));
            }
        }
        Ok(group
            .iter()
            .zip(rates)
            .map(|((spec, label), runs)| {
                let mut sorted = runs.clone();
                sorted.sort_by(f64::total_cmp);
                let rate = sorted[sorted.len() / 2];
                let records = spec.count / u64::from(spec.producers) * u64::from(spec.producers);
                Row {
                    scenario: scenario.into(),
                    transport: (*label).into(),
                    producers: spec.producers,
                    consumers: spec.consumers,
                    size: spec.size,
                    records,
                    seconds: records as f64 / rate,
                    records_per_sec: rate,
                    mb_per_sec: rate * spec.size as f64 / 1e6,
                    runs,
                    vs_pipe: None,
                    vs_limit: None,
                }
            })
            .collect())
    }
}

/// A durable consumer's commit, in this process: nanoseconds per commit
/// alone, and per record read, checked and committed.
fn commit_figures(dir: &Path, segment_mib: u64, size: usize) -> Result<Vec<Figure>> {
    let path = dir.join("commit");
    let log = tidelog_options(segment_mib).open(&path)?;
    let n: u64 = 2_000_000;
    {
        let mut a = log.appender()?;
        let record = vec![7u8; size];
        for _ in 0..n {
            a.append(&record)?;
        }
    }
    let mut c = log.consumer("bench")?;
    c.try_next()?.ok_or("no record")?;
    let commits = 10_000_000u32;
    let t = std::time::Instant::now();
    for _ in 0..commits {
        std::hint::black_box(c.commit().unwrap());
    }
    let per_commit = t.elapsed().as_nanos() as f64 / f64::from(commits);
    drop(c);
    log.reset_consumer("bench", tidelog::StartAt::Beginning)?;
    let mut c = log.consumer("bench")?;
    let t = std::time::Instant::now();
    let mut read = 0u64;
    while let Some(r) = c.try_next()? {
        if r.iter().fold(0u8, |acc, &b| acc | (b ^ 7)) != 0 {
            return Err("record damaged".into());
        }
        read += 1;
        c.commit().unwrap();
    }
    if read != n {
        return Err(format!("read {read} of {n} records").into());
    }
    let per_record = t.elapsed().as_nanos() as f64 / n as f64;
    drop(c);
    drop(log);
    std::fs::remove_dir_all(&path)?;
    Ok(vec![
        Figure::new("commit", "one commit (two atomic stores)", per_commit, "ns"),
        Figure::new(
            "commit",
            &format!("read, check and commit one {} record", fmt_size(size)),
            per_record,
            "ns",
        ),
    ])
}

fn wants(args: &Args, scenario: &str) -> bool {
    if scenario == "nats" {
        // Needs a nats-server: only on demand.
        return args.scenario.iter().any(|s| s == scenario);
    }
    if scenario == "durability" {
        // Long (21 runs of a second and more) and disk-bound: only on demand.
        return args.durability || args.scenario.iter().any(|s| s == scenario);
    }
    if args.durability && args.scenario == ["all"] {
        return false;
    }
    args.scenario.iter().any(|s| s == scenario || s == "all")
}

fn machine(log_dir: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let uname = rustix::system::uname();
    let kernel = format!(
        "{} {}",
        uname.sysname().to_string_lossy(),
        uname.release().to_string_lossy()
    );
    let filesystem = match rustix::fs::statfs(log_dir).map(|s| s.f_type) {
        Ok(0xEF53) => "ext4".into(),
        Ok(0x0102_1994) => "tmpfs".into(),
        Ok(0x5846_5342) => "xfs".into(),
        Ok(0x9123_683E) => "btrfs".into(),
        Ok(t) => format!("f_type {t:#x}"),
        Err(_) => "unknown".into(),
    };
    Machine {
        cpu,
        cpus,
        kernel,
        filesystem,
        log_dir: log_dir.display().to_string(),
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else {
        format!("{:.1} k", r / 1e3)
    }
}

fn fmt_size(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

fn ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |r| format!("{r:.2}x"))
}

pub fn run(args: Args) -> Result<ExitCode> {
    if args.size < RECORD_HEADER || args.large_size < RECORD_HEADER {
        return Err(format!("record sizes must be at least {RECORD_HEADER} bytes").into());
    }
    if args.rate == 0 || args.latency_seconds <= 0.0 {
        return Err("--rate and --latency-seconds must be positive".into());
    }
    let tmp = match &args.dir {
        Some(d) => tempfile::Builder::new()
            .prefix("tidelog-bench-")
            .tempdir_in(d)?,
        None => tempfile::Builder::new()
            .prefix("tidelog-bench-")
            .tempdir()?,
    };
    let machine = machine(tmp.path());
    // Progress on the terminal only: none when the output goes elsewhere.
    let progress = std::io::stdout().is_terminal() && std::io::stderr().is_terminal() && !args.json;
    let mut plan = 0;
    let repeat = args.repeat.max(1);
    for (s, n) in [
        ("throughput", 5 * repeat),
        ("multi", 2 * repeat),
        ("large", 2 * repeat),
        ("group", 3 * repeat + 1),
        ("retention", 1),
        ("latency", 7),
    ] {
        if wants(&args, s) {
            plan += n;
        }
    }
    let mut b = Bench {
        args,
        tmp,
        runs: 0,
        total: plan,
        progress,
    };
    let (size, count) = (b.args.size, b.args.count);
    let spec = |transport, producers, consumers, count, size| Spec {
        transport,
        producers,
        consumers,
        count,
        size,
        rate: 0,
        wait: "spin",
    };
    let mut rows = Vec::new();
    if wants(&b.args, "throughput") {
        rows.extend(b.throughput_group(
            "throughput",
            &[
                (
                    spec("tidelog", 1, 0, count, size),
                    "tidelog append, no consumer",
                ),
                (spec("tidelog", 1, 1, count, size), "tidelog"),
                (spec("pipe", 1, 1, count / 5, size), "pipe"),
                (spec("unix", 1, 1, count / 5, size), "unix socket"),
                (spec("raw", 1, 1, count, size), "raw memcpy (limit)"),
            ],
        )?);
    }
    if wants(&b.args, "multi") {
        let shapes = match (b.args.producers, b.args.consumers) {
            (Some(p), Some(c)) => vec![(p.max(1), c)],
            _ => vec![(4, 1), (2, 2)],
        };
        let group: Vec<_> = shapes
            .into_iter()
            .map(|(p, c)| (spec("tidelog", p, c, count, size), "tidelog"))
            .collect();
        rows.extend(b.throughput_group("multi", &group)?);
    }
    if wants(&b.args, "large") {
        let (ls, lc) = (b.args.large_size, b.args.large_count);
        rows.extend(b.throughput_group(
            "large",
            &[
                (spec("tidelog", 1, 1, lc, ls), "tidelog"),
                (spec("raw", 1, 1, lc, ls), "raw memcpy (limit)"),
            ],
        )?);
    }
    if wants(&b.args, "group") {
        let group: Vec<_> = [1, 2, 4]
            .into_iter()
            .map(|members| {
                (
                    spec("group", 1, members, count, size),
                    "tidelog group, batch 64",
                )
            })
            .collect();
        rows.extend(b.throughput_group("group", &group)?);
    }
    // Ratios to the pipe and to the limit of the same record size.
    let pipe: Vec<_> = rows
        .iter()
        .filter(|r| r.transport == "pipe")
        .map(|r| (r.size, r.records_per_sec))
        .collect();
    let limit: Vec<_> = rows
        .iter()
        .filter(|r| r.transport.starts_with("raw"))
        .map(|r| (r.size, r.records_per_sec))
        .collect();
    for r in rows
        .iter_mut()
        .filter(|r| r.transport.starts_with("tidelog"))
    {
        r.vs_pipe = pipe
            .iter()
            .find(|(s, _)| *s == r.size)
            .map(|(_, p)| r.records_per_sec / p);
        r.vs_limit = limit
            .iter()
            .find(|(s, _)| *s == r.size)
            .map(|(_, l)| r.records_per_sec / l);
    }

    let mut figures = Vec::new();
    if wants(&b.args, "commit") {
        figures.extend(commit_figures(
            b.tmp.path(),
            b.args.segment_mib,
            b.args.size,
        )?);
    }
    if wants(&b.args, "retention") {
        figures.extend(b.retention_figures()?);
    }
    if wants(&b.args, "durability") {
        let show = b.progress;
        figures.extend(durable::figures(
            b.tmp.path(),
            b.args.size,
            b.args.durability_seconds.max(0.1),
            b.args.segment_mib,
            |label| {
                if show {
                    eprint!("\r\x1b[K{label}");
                    let _ = std::io::stderr().flush();
                }
            },
        )?);
    }

    if wants(&b.args, "nats") {
        let show = b.progress;
        figures.extend(nats::figures(
            b.tmp.path(),
            b.args.nats_count.max(1),
            b.args.nats_window.max(1),
            b.args.repeat.max(1),
            |label| {
                if show {
                    eprint!("\r\x1b[K{label}");
                    let _ = std::io::stderr().flush();
                }
            },
        )?);
    }

    let mut latency = Vec::new();
    if wants(&b.args, "latency") {
        let n = (b.args.rate as f64 * b.args.latency_seconds) as u64;
        for (transport, wait, label) in [
            ("none", "spin", "no transport (floor), 2 CPUs busy"),
            ("tidelog", "spin", "tidelog, spinning reader"),
            ("tidelog", "yield", "tidelog, yielding reader"),
            ("tidelog", "spin-park", "tidelog, spin-then-park reader"),
            ("tidelog", "park", "tidelog, parking (futex) reader"),
            ("pipe", "spin", "pipe, blocking read"),
            ("unix", "spin", "unix socket, blocking read"),
        ] {
            let s = Spec {
                transport,
                producers: 1,
                consumers: 1,
                count: n,
                size,
                rate: b.args.rate,
                wait,
            };
            let (_, lat) = b.run(&s, label)?;
            latency.push(LatencyRow {
                transport: transport.into(),
                wait: label.into(),
                size,
                rate: b.args.rate,
                latency: lat.ok_or("the consumer reported no latencies")?,
            });
        }
    }
    if b.progress {
        eprint!("\r\x1b[K");
    }

    if let Some(svg) = &b.args.plot {
        let runs: Vec<_> = latency
            .iter()
            .map(|l| (l.wait.clone(), l.latency.clone()))
            .collect();
        let title = format!(
            "tidelog bench: one-way latency, {} records at {} /s",
            fmt_size(size),
            b.args.rate
        );
        plot::latency_svg(svg, &title, &runs)?;
    }
    let report = Report {
        machine,
        throughput: rows,
        latency,
        figures,
    };
    if b.args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_tables(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_tables(r: &Report) {
    let m = &r.machine;
    println!(
        "tidelog bench on {} ({} CPUs), {}, logs on {} in {}",
        m.cpu, m.cpus, m.kernel, m.filesystem, m.log_dir
    );
    if !r.throughput.is_empty() {
        println!();
        println!(
            "{:<11} {:<28} {:>2} {:>2} {:>7} {:>9} {:>8} {:>11} {:>9} {:>8} {:>8}",
            "scenario",
            "transport",
            "P",
            "C",
            "size",
            "records",
            "seconds",
            "records/s",
            "MB/s",
            "vs pipe",
            "vs limit"
        );
        for row in &r.throughput {
            println!(
                "{:<11} {:<28} {:>2} {:>2} {:>7} {:>9} {:>8.3} {:>11} {:>9.0} {:>8} {:>8}",
                row.scenario,
                row.transport,
                row.producers,
                row.consumers,
                fmt_size(row.size),
                row.records,
                row.seconds,
                fmt_rate(row.records_per_sec),
                row.mb_per_sec,
                ratio(row.vs_pipe),
                ratio(row.vs_limit),
            );
        }
        println!("P, C: producer and consumer processes (every consumer checks every record); records/s from the first start to the last end.");
        println!("vs pipe, vs limit: records/s over the pipe's and over the raw-memcpy row's (a shared counter, no frames) at the same size; docs/BENCHMARKS.md says more.");
    }
    if !r.figures.is_empty() {
        println!();
        println!("{:<11} {:<58} {:>14}", "scenario", "figure", "value");
        for f in &r.figures {
            let value = if f.unit == "records/s" {
                format!("{}/s", fmt_rate(f.value))
            } else {
                format!("{:.1} {}", f.value, f.unit)
            };
            println!("{:<11} {:<58} {:>14}", f.scenario, f.name, value);
        }
    }
    if !r.latency.is_empty() {
        let l0 = &r.latency[0];
        println!();
        println!(
            "one-way latency, 1 producer -> 1 consumer, {} records at {}/s, intended send time to receipt",
            fmt_size(l0.size),
            l0.rate
        );
        println!(
            "{:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "transport, reader", "samples", "p50", "p90", "p99", "p99.9", "p99.99", "max"
        );
        for row in &r.latency {
            let l = &row.latency;
            println!(
                "{:<34} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                row.wait,
                l.samples,
                human_ns(l.p50),
                human_ns(l.p90),
                human_ns(l.p99),
                human_ns(l.p999),
                human_ns(l.p9999),
                human_ns(l.max),
            );
        }
    }
}
