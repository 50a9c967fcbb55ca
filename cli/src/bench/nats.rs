//! The `nats` scenario: `tidelog forward` (the library behind it) against a
//! plain async-nats JetStream publisher with the same window of publishes
//! in flight, in the same run, against one local `nats-server`.
//!
//! Each run publishes `count` records of one size to a stream of its own
//! (file storage, one replica, created by the run); the clock runs from
//! connecting to the last acknowledgement, for both. The forward's log is
//! written before its clock starts, and each run's stream is deleted after
//! it. Runs alternate between plain, forward and plain with message ids
//! (what the forward's headers cost the server), each kind first, second
//! and third in turn, `repeat` times; the figures are medians, with the
//! server's CPU time per record (from /proc) for each kind. Everything runs on one thread (a
//! current-thread runtime), as `tidelog forward` does.

use std::collections::VecDeque;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};

use super::{Figure, Result};

/// A `nats-server` with JetStream on a free loopback port; killed when
/// dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(dir: &Path) -> Result<Server> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let store = dir.join("nats-store");
        std::fs::create_dir_all(&store)?;
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("the nats scenario needs nats-server (apt-get install nats-server): {e}")
            })?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("nats-server did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Server {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        })
    }
}

impl Server {
    /// CPU time the server has used, in seconds (user and system, from
    /// /proc).
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which ends with the last ')'.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15, the 12th and 13th after
        // the name.
        let hz = rustix::param::clock_ticks_per_second() as f64;
        (ticks(11) + ticks(12)) / hz
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time this process has used, in seconds (every thread; the runs
/// use one, beside tidelog's idle waiter thread).
fn process_cpu() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// One plain publisher run: connect, create the stream, publish `count`
/// messages of `size` bytes keeping `window` acknowledgements in flight
/// (with message ids if `ids`), await the last. Seconds.
async fn plain(
    url: &str,
    name: &str,
    count: u64,
    size: usize,
    window: usize,
    ids: bool,
    client_cpu: &mut f64,
) -> Result<f64> {
    let start = Instant::now();
    let cpu = process_cpu();
    let js = jetstream::new(async_nats::connect(url).await?);
    let subject = format!("{}.s", name.to_lowercase());
    js.create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.clone()],
        storage: stream::StorageType::File,
        // As the streams `tidelog forward` creates.
        duplicate_window: tidelog_nats::DEFAULT_DUPLICATE_WINDOW,
        ..Default::default()
    })
    .await?;
    let subject = async_nats::Subject::from(subject);
    let payload = bytes::Bytes::from(vec![0x5A; size]);
    let mut acks = VecDeque::with_capacity(window);
    for i in 0..count {
        let mut msg = jetstream::message::PublishMessage::build().payload(payload.clone());
        if ids {
            msg = msg.message_id(format!(
                "00112233445566778899aabbccddeeff:{}",
                4096 + i * 80
            ));
        }
        acks.push_back(js.send_publish(subject.clone(), msg).await?);
        if acks.len() >= window {
            acks.pop_front().ok_or("no ack")?.await?;
        }
    }
    for a in acks {
        a.await?;
    }
    let secs = start.elapsed().as_secs_f64();
    *client_cpu += process_cpu() - cpu;
    Ok(secs)
}

/// One forward run of a log of `count` records of `size` bytes, written
/// before the clock starts. Seconds.
async fn forward(
    url: &str,
    dir: &Path,
    name: &str,
    count: u64,
    size: usize,
    window: usize,
    client_cpu: &mut f64,
) -> Result<f64> {
    let log = tidelog::Log::open(dir.join(name))?;
    {
        let mut a = log.appender()?;
        let record = vec![0x5A; size];
        for _ in 0..count {
            a.append(&record)?;
        }
    }
    let subject = format!("{}.s", name.to_lowercase());
    let start = Instant::now();
    let cpu = process_cpu();
    let report = tidelog_nats::Forward::new(url, name, subject)
        .window(window)
        .run(&log, |_| {})
        .await?;
    let secs = start.elapsed().as_secs_f64();
    *client_cpu += process_cpu() - cpu;
    if report.records != count {
        return Err(format!("forwarded {} of {count} records", report.records).into());
    }
    drop(log);
    std::fs::remove_dir_all(dir.join(name))?;
    Ok(secs)
}

/// Deletes a run's stream, so that every run meets a server holding the
/// same (nothing).
async fn delete_stream(url: &str, name: &str) -> Result<()> {
    let js = jetstream::new(async_nats::connect(url).await?);
    js.delete_stream(name).await?;
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The scenario's figures.
pub(super) fn figures(
    dir: &Path,
    count: u64,
    window: usize,
    repeat: usize,
    show: impl Fn(&str),
) -> Result<Vec<Figure>> {
    let server = Server::start(dir)?;
    // One thread for the publisher and the client's connection task, as
    // `tidelog forward` runs (cli/src/bridge.rs says why).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut out = Vec::new();
    for size in [64usize, 1024] {
        let (mut p, mut f, mut pi) = (Vec::new(), Vec::new(), Vec::new());
        // The server's CPU time per record, in microseconds, per kind.
        let (mut cp, mut cf, mut cpi) = (Vec::new(), Vec::new(), Vec::new());
        // This process's CPU time, summed over the runs of each kind.
        let (mut kp, mut kf, mut kpi) = (0.0, 0.0, 0.0);
        let per_record = |before: f64| (server.cpu_seconds() - before) * 1e6 / count as f64;
        for r in 0..repeat.max(1) {
            show(&format!("nats: {size} B, run {} of {repeat}", r + 1));
            let url = &server.url;
            // Each kind goes first, second and third in turn.
            for k in 0..3 {
                let c = server.cpu_seconds();
                match (k + r) % 3 {
                    0 => {
                        let name = format!("PLAIN{size}R{r}");
                        p.push(
                            rt.block_on(plain(url, &name, count, size, window, false, &mut kp))?,
                        );
                        cp.push(per_record(c));
                        rt.block_on(delete_stream(url, &name))?;
                    }
                    1 => {
                        let name = format!("FWD{size}R{r}");
                        f.push(
                            rt.block_on(forward(url, dir, &name, count, size, window, &mut kf))?,
                        );
                        cf.push(per_record(c));
                        rt.block_on(delete_stream(url, &name))?;
                    }
                    _ => {
                        let name = format!("IDS{size}R{r}");
                        pi.push(
                            rt.block_on(plain(url, &name, count, size, window, true, &mut kpi))?,
                        );
                        cpi.push(per_record(c));
                        rt.block_on(delete_stream(url, &name))?;
                    }
                }
            }
        }
        let rate = |secs: f64| count as f64 / secs;
        let (p, f, pi) = (rate(median(p)), rate(median(f)), rate(median(pi)));
        let (cp, cf, cpi) = (median(cp), median(cf), median(cpi));
        let label = super::fmt_size(size);
        out.push(Figure::new(
            "nats",
            &format!("async-nats JetStream publisher, {label}, window {window}"),
            p,
            "records/s",
        ));
        out.push(Figure::new(
            "nats",
            &format!("same, with a message id per publish, {label}"),
            pi,
            "records/s",
        ));
        out.push(Figure::new(
            "nats",
            &format!("tidelog forward, {label}, window {window}"),
            f,
            "records/s",
        ));
        out.push(Figure::new(
            "nats",
            &format!("tidelog forward / plain publisher, {label}"),
            100.0 * f / p,
            "%",
        ));
        let runs = (count * repeat.max(1) as u64) as f64;
        for (what, us) in [
            ("plain publisher", kp * 1e6 / runs),
            ("with message ids", kpi * 1e6 / runs),
            ("tidelog forward", kf * 1e6 / runs),
        ] {
            out.push(Figure::new(
                "nats",
                &format!("client CPU per record, {what}, {label}"),
                us,
                "us",
            ));
        }
        for (what, us) in [
            ("plain publisher", cp),
            ("with message ids", cpi),
            ("tidelog forward", cf),
        ] {
            out.push(Figure::new(
                "nats",
                &format!("server CPU per record, {what}, {label}"),
                us,
                "us",
            ));
        }
    }
    let _ = std::io::stderr().flush();
    Ok(out)
}
