//! One process of a benchmark scenario: a producer or a consumer over one
//! transport. Started by the parent as `tidelog bench-worker`; reports on
//! stdout in lines starting with `@@ `, and starts when the parent writes a
//! byte to its stdin, so that start-up is not timed.

use std::error::Error as StdError;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use hdrhistogram::Histogram;
use tidelog::{Appender, Options, Reader, WaitStrategy};

use super::raw::{RawConsumer, RawProducer};
use super::stats::Latency;

type Result<T> = std::result::Result<T, Box<dyn StdError>>;

/// Bytes every benchmark record starts with: producer id (u32), padding,
/// sequence number (u64), send stamp (u64, ns on the monotonic clock).
pub const RECORD_HEADER: usize = 24;

/// Arguments of the hidden `tidelog bench-worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// `producer` or `consumer`.
    #[arg(long)]
    role: String,
    /// `tidelog`, `pipe`, `unix` or `raw`.
    #[arg(long)]
    transport: String,
    /// The log directory, FIFO, socket or file of the transport.
    #[arg(long)]
    path: PathBuf,
    /// This producer's id.
    #[arg(long, default_value_t = 0)]
    id: u32,
    /// Number of producers (consumers check each one's sequence).
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Records to send (producer) or to receive in all (consumer).
    #[arg(long)]
    count: u64,
    /// Record size in bytes.
    #[arg(long)]
    size: usize,
    /// Records per second; 0 sends as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How a tidelog consumer waits: spin, yield, spin-park or park.
    #[arg(long, default_value = "spin")]
    wait: String,
    /// Pin the process to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Segment capacity in MiB (tidelog).
    #[arg(long, default_value_t = 1024)]
    segment_mib: u64,
    /// Producer: MiB ahead of the appender kept locked in memory
    /// (`Options::lock_in_memory`; 0: none).
    #[arg(long, default_value_t = 0)]
    lock_mib: u64,
    /// Consumer: record one-way latencies from the send stamps.
    #[arg(long)]
    latency: bool,
    /// Bytes of the raw transport's mapping.
    #[arg(long, default_value_t = 0)]
    raw_capacity: u64,
    /// Group member: records per claim.
    #[arg(long, default_value_t = 64)]
    batch: u32,
}

/// Nanoseconds on the system-wide monotonic clock, comparable across
/// processes.
pub fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

pub fn tidelog_options(segment_mib: u64) -> Options {
    Options::new().segment_capacity(segment_mib << 20)
}

pub fn wait_strategy(name: &str) -> Result<WaitStrategy> {
    Ok(match name {
        "spin" => WaitStrategy::Spin,
        "yield" => WaitStrategy::Yield,
        "spin-park" => WaitStrategy::default(),
        "park" => WaitStrategy::Park,
        other => return Err(format!("unknown wait strategy {other}").into()),
    })
}

fn say(msg: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ {msg}")?;
    out.flush()?;
    Ok(())
}

fn wait_for_go() -> Result<()> {
    let mut b = [0u8];
    std::io::stdin().read_exact(&mut b)?;
    Ok(())
}

fn pin(cpu: Option<usize>) -> Result<()> {
    if let Some(cpu) = cpu {
        let mut set = rustix::thread::CpuSet::new();
        set.set(cpu);
        rustix::thread::sched_setaffinity(None, &set)?;
    }
    Ok(())
}

/// Where a producer sends.
trait Sink {
    fn send(&mut self, record: &[u8]) -> Result<()>;
    /// Called while a rate-limited producer waits for its next send time.
    fn idle(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Where a consumer receives.
trait Source {
    fn recv(&mut self, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>;
}

/// Sends nothing: the latency floor, the pacing loop's own delays.
struct NullSink;

impl Sink for NullSink {
    fn send(&mut self, record: &[u8]) -> Result<()> {
        std::hint::black_box(record);
        Ok(())
    }
}

struct TidelogSink(Appender);

impl Sink for TidelogSink {
    fn send(&mut self, record: &[u8]) -> Result<()> {
        self.0.append(record)?;
        Ok(())
    }
    fn idle(&mut self) -> Result<()> {
        self.0.pretouch()?;
        Ok(())
    }
}

struct TidelogSource(Reader);

impl Source for TidelogSource {
    fn recv(&mut self, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let r = self.0.next_blocking()?;
        f(&r)
    }
}

struct StreamSink<W: Write>(W);

impl<W: Write> Sink for StreamSink<W> {
    fn send(&mut self, record: &[u8]) -> Result<()> {
        // One write per message, as a message-passing program would.
        self.0.write_all(record)?;
        Ok(())
    }
}

struct StreamSource<R: Read> {
    inner: BufReader<R>,
    buf: Vec<u8>,
}

impl<R: Read> Source for StreamSource<R> {
    fn recv(&mut self, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        self.inner.read_exact(&mut self.buf)?;
        f(&self.buf)
    }
}

impl Sink for RawProducer {
    fn send(&mut self, record: &[u8]) -> Result<()> {
        self.push(record)?;
        Ok(())
    }
    fn idle(&mut self) -> Result<()> {
        RawProducer::idle(self)
    }
}

impl Source for RawConsumer {
    fn recv(&mut self, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        self.pop(f)
    }
}

/// Opens a FIFO for reading without blocking on the writer, then makes it
/// blocking again.
fn open_fifo_reader(path: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    rustix::fs::fcntl_setfl(&f, rustix::fs::OFlags::empty())?;
    Ok(f)
}

pub fn run(args: WorkerArgs) -> Result<ExitCode> {
    pin(args.cpu)?;
    if args.size < RECORD_HEADER {
        return Err(format!("records must be at least {RECORD_HEADER} bytes").into());
    }
    match args.role.as_str() {
        "producer" => {
            let mut sink: Box<dyn Sink> = match args.transport.as_str() {
                "tidelog" => {
                    let log = tidelog_options(args.segment_mib)
                        .lock_in_memory(args.lock_mib << 20)
                        .open(&args.path)?;
                    let mut appender = log.appender()?;
                    // Prepare the first pages before the clock starts.
                    while appender.pretouch()? {}
                    Box::new(TidelogSink(appender))
                }
                "pipe" => {
                    let f = OpenOptions::new().write(true).open(&args.path)?;
                    let _ = rustix::pipe::fcntl_setpipe_size(&f, 1 << 20);
                    Box::new(StreamSink(f))
                }
                "unix" => Box::new(StreamSink(UnixStream::connect(&args.path)?)),
                "raw" => Box::new(RawProducer::open(&args.path, args.raw_capacity)?),
                "none" => Box::new(NullSink),
                other => return Err(format!("unknown transport {other}").into()),
            };
            produce(&args, sink.as_mut())
        }
        "consumer" => {
            let source: Box<dyn Source> = match args.transport.as_str() {
                "tidelog" => {
                    let log = tidelog_options(args.segment_mib).open(&args.path)?;
                    let reader = log.reader().with_wait_strategy(wait_strategy(&args.wait)?);
                    // The reader keeps the log (and its mapping) alive.
                    Box::new(TidelogSource(reader))
                }
                "pipe" => {
                    let f = open_fifo_reader(&args.path)?;
                    Box::new(StreamSource {
                        inner: BufReader::with_capacity(1 << 20, f),
                        buf: vec![0; args.size],
                    })
                }
                "unix" => {
                    let listener = UnixListener::bind(&args.path)?;
                    say("ready")?;
                    let (stream, _) = listener.accept()?;
                    let source = StreamSource {
                        inner: BufReader::with_capacity(1 << 20, stream),
                        buf: vec![0; args.size],
                    };
                    return consume(&args, Box::new(source), false);
                }
                "raw" => Box::new(RawConsumer::open(&args.path, args.raw_capacity, args.size)?),
                "none" => return spin_alongside(&args),
                other => return Err(format!("unknown transport {other}").into()),
            };
            consume(&args, source, true)
        }
        "member" => member(&args),
        other => Err(format!("unknown role {other}").into()),
    }
}

/// A member of the consumer group `bench`: claims batches until none is
/// left, checks every record (its producer, its sequence number, its body
/// byte by byte, never seen before by this member), acknowledges each
/// batch, and writes the sequence numbers it acknowledged as a bitmap to
/// `PATH.member-ID` for the parent, which checks that the members' sets
/// are disjoint and cover every record.
fn member(args: &WorkerArgs) -> Result<ExitCode> {
    let log = tidelog_options(args.segment_mib).open(&args.path)?;
    let opts = tidelog::GroupOptions::new().batch(args.batch);
    let mut member = log.group_member_with("bench", opts)?;
    let mut seen = vec![0u64; args.count.div_ceil(64) as usize];
    say("ready")?;
    wait_for_go()?;
    let start = now_ns();
    let size = args.size;
    while let Some(mut batch) = member.claim()? {
        if batch.is_redelivery() {
            return Err("a batch was delivered twice in a run with no failure".into());
        }
        while let Some(r) = member.next_record(&mut batch)? {
            if r.len() != size {
                return Err(format!("record of {} bytes, expected {size}", r.len()).into());
            }
            let seq = u64::from_le_bytes(r[8..16].try_into().unwrap_or_default());
            let bit = 1u64 << (seq % 64);
            let word = seen
                .get_mut((seq / 64) as usize)
                .ok_or_else(|| format!("sequence number {seq} out of range"))?;
            if *word & bit != 0 {
                return Err(format!("record {seq} delivered twice").into());
            }
            *word |= bit;
            let body = seq as u8;
            if r[..4] != [0; 4]
                || r[RECORD_HEADER..]
                    .iter()
                    .fold(0u8, |acc, &b| acc | (b ^ body))
                    != 0
            {
                return Err(format!("record {seq} damaged").into());
            }
        }
        member.ack(batch)?;
    }
    let end = now_ns();
    let bytes: Vec<u8> = seen.iter().flat_map(|w| w.to_le_bytes()).collect();
    std::fs::write(member_file(&args.path, args.id), bytes)?;
    say(&format!("done {start} {end}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Where member `id` of a group run writes its bitmap.
pub fn member_file(path: &Path, id: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".member-{id}"));
    PathBuf::from(p)
}

fn produce(args: &WorkerArgs, sink: &mut dyn Sink) -> Result<ExitCode> {
    // With no transport, the producer measures how late it gets to send:
    // the machine's own scheduling and virtualisation delays, which every
    // transport's latency includes.
    let floor = args.transport == "none" && args.rate > 0;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut record = vec![0u8; args.size];
    record[..4].copy_from_slice(&args.id.to_le_bytes());
    say("ready")?;
    wait_for_go()?;
    let start = now_ns();
    let interval = if args.rate > 0 {
        1_000_000_000f64 / args.rate as f64
    } else {
        0.0
    };
    for seq in 0..args.count {
        let stamp = if args.rate > 0 {
            // The intended send time, not the actual one: a stall delays
            // every record queued behind it, and that delay is counted
            // (no coordinated omission).
            let due = start + (seq as f64 * interval) as u64;
            let mut now = now_ns();
            while now < due {
                sink.idle()?;
                now = now_ns();
            }
            if floor {
                hist.saturating_record((now - due).max(1));
            }
            due
        } else {
            0
        };
        record[8..16].copy_from_slice(&seq.to_le_bytes());
        record[16..24].copy_from_slice(&stamp.to_le_bytes());
        // The body is produced for every record and checked byte by byte
        // by every consumer, whatever the transport.
        record[RECORD_HEADER..].fill(seq as u8);
        sink.send(&record)?;
    }
    report(start, floor.then_some(&hist))
}

/// The worker's last words: its start and end time, and its latencies.
fn report(start: u64, latencies: Option<&Histogram<u64>>) -> Result<ExitCode> {
    say(&format!("done {start} {}", now_ns()))?;
    if let Some(h) = latencies {
        say(&format!("latency {}", Latency::from_histogram(h).encode()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The consumer of the latency floor: receives nothing, but keeps its CPU
/// busy for as long as the producer runs, as a spinning consumer would, so
/// that the floor shows what two busy CPUs leave for everything else.
fn spin_alongside(args: &WorkerArgs) -> Result<ExitCode> {
    say("ready")?;
    wait_for_go()?;
    let start = now_ns();
    let until = start + args.count.saturating_mul(1_000_000_000) / args.rate.max(1);
    while now_ns() < until {
        std::hint::spin_loop();
    }
    report(start, None)
}

fn consume(args: &WorkerArgs, mut source: Box<dyn Source>, announce: bool) -> Result<ExitCode> {
    let mut expected = vec![0u64; args.producers as usize];
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    if announce {
        say("ready")?;
    }
    wait_for_go()?;
    let start = now_ns();
    let size = args.size;
    let latency = args.latency;
    let mut check = |r: &[u8]| -> Result<()> {
        if r.len() != size {
            return Err(format!("record of {} bytes, expected {size}", r.len()).into());
        }
        let word = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().unwrap_or_default());
        let id = u32::from_le_bytes(r[..4].try_into().unwrap_or_default()) as usize;
        let seq = word(8);
        if id >= expected.len() || seq != expected[id] {
            return Err(format!("record out of order: producer {id} seq {seq}").into());
        }
        // Or-fold instead of an early exit, so the loop vectorises.
        let body = seq as u8;
        if r[RECORD_HEADER..]
            .iter()
            .fold(0u8, |acc, &b| acc | (b ^ body))
            != 0
        {
            return Err(format!("record body damaged: producer {id} seq {seq}").into());
        }
        expected[id] += 1;
        if latency {
            hist.saturating_record(now_ns().saturating_sub(word(16)).max(1));
        }
        Ok(())
    };
    for _ in 0..args.count {
        source.recv(&mut check)?;
    }
    let code = report(start, latency.then_some(&hist))?;
    // Let a blocked writer on the other end finish before we go.
    std::thread::sleep(Duration::from_millis(1));
    Ok(code)
}
