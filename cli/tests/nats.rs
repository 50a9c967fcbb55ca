//! `tidelog forward` and `tidelog ingest` against real `nats-server`s on
//! loopback ports, each with its own store directory, stopped by process
//! id: the bridge killed at random moments, the server killed and
//! restarted, a three-node cluster losing a node, a round trip, and the
//! errors that must stop it.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;

const BIN: &str = env!("CARGO_BIN_EXE_tidelog");

/// Says something from a passing test (libtest captures `eprintln!`).
fn note(msg: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "note: {msg}");
}

/// Whether `nats-server` can run here; says why not if it cannot. `.ci/run`
/// installs it, so on CI the tests always run.
fn have_server() -> bool {
    match Command::new("nats-server").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            note("SKIPPED: nats-server is not installed (apt-get install nats-server)");
            false
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `nats-server` with JetStream, on a free loopback port, with its own
/// store; killed (by pid) when dropped.
struct Server {
    child: Option<Child>,
    conf: PathBuf,
    port: u16,
    name: String,
}

impl Server {
    /// One server; `extra` is added to its configuration file.
    fn start(dir: &Path, name: &str, extra: &str) -> Server {
        let port = free_port();
        Self::start_on(dir, name, port, extra)
    }

    fn start_on(dir: &Path, name: &str, port: u16, extra: &str) -> Server {
        let store = dir.join(format!("{name}-store"));
        std::fs::create_dir_all(&store).unwrap();
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(
            &conf,
            format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\n\
                 jetstream {{ store_dir: {:?} }}\n{extra}\n",
                store.display().to_string()
            ),
        )
        .unwrap();
        let mut s = Server {
            child: None,
            conf,
            port,
            name: name.to_owned(),
        };
        s.restart();
        s
    }

    /// Starts the server (again, on the same port and store).
    fn restart(&mut self) {
        let log = self.conf.with_extension("log");
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "{} did not listen", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, by process id.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-9", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client of `url`, whose credentials (`user:password@`) go in the
/// options (the client does not take them from the URL).
async fn client(url: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    let (rest, scheme) = match url.split_once("://") {
        Some((s, r)) => (r, format!("{s}://")),
        None => (url, String::new()),
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            async_nats::ConnectOptions::with_user_and_password(u.into(), p.into())
                .connect(format!("{scheme}{host}"))
                .await
        }
        None => async_nats::connect(url).await,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until JetStream answers on `url` (a cluster elects its meta
/// leader first).
fn wait_for_jetstream(url: &str) {
    runtime().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(c) = client(url).await {
                // "No such stream" is an answer of a working JetStream.
                use jetstream::context::GetStreamErrorKind as K;
                match jetstream::new(c).get_stream("READY_PROBE").await {
                    Ok(_) => return,
                    Err(e) => {
                        if let K::JetStream(je) = e.kind() {
                            if je.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND {
                                return;
                            }
                        }
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "JetStream did not come up on {url}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// A stored message: stream sequence, message id, payload.
type Stored = (u64, Option<String>, Vec<u8>);

/// Every message of `stream`, read through `url`; requests that time out
/// (a cluster electing leaders after losing a node) are tried again for
/// up to 30 s.
fn read_stream(url: &str, name: &str) -> Vec<Stored> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match runtime().block_on(try_read_stream(url, name)) {
            Ok(out) => return out,
            Err(e) => {
                assert!(Instant::now() < deadline, "reading {name} from {url}: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

async fn try_read_stream(url: &str, name: &str) -> Result<Vec<Stored>, async_nats::Error> {
    let c = client(url).await?;
    let js = jetstream::new(c);
    let mut s = js.get_stream(name).await?;
    let n = s.info().await?.state.messages;
    let mut out = Vec::new();
    if n == 0 {
        return Ok(out);
    }
    let consumer = s.create_consumer(pull::OrderedConfig::default()).await?;
    let mut msgs = consumer.messages().await?;
    while let Some(m) = msgs.next().await {
        let m = m?;
        let info = m.info()?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned());
        out.push((seq, id, m.payload.to_vec()));
        if pending == 0 {
            break;
        }
    }
    Ok(out)
}

/// Publishes `n` messages `message(i)` to `subject` of a new file stream.
fn publish(url: &str, name: &str, subject: &str, n: u64) {
    publish_range(url, Some(name), subject, 0..n);
}

/// Publishes `message(i)` for every `i` of `range` to `subject`, first
/// creating the file stream `create` if given.
fn publish_range(url: &str, create: Option<&str>, subject: &str, range: std::ops::Range<u64>) {
    runtime().block_on(async {
        let c = client(url).await.unwrap();
        let js = jetstream::new(c);
        if let Some(name) = create {
            js.create_stream(stream::Config {
                name: name.to_owned(),
                subjects: vec![subject.to_owned()],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let mut acks = std::collections::VecDeque::new();
        for i in range {
            acks.push_back(
                js.publish(subject.to_owned(), message(i).into())
                    .await
                    .unwrap(),
            );
            if acks.len() >= 256 {
                acks.pop_front().unwrap().await.unwrap();
            }
        }
        for a in acks {
            a.await.unwrap();
        }
    })
}

/// The `i`th record of the test logs: its number, then 0 to 300 filler
/// bytes (any byte value).
fn message(i: u64) -> Vec<u8> {
    let mut v = format!("{i:08}|").into_bytes();
    let len = (i.wrapping_mul(7919) % 301) as usize;
    v.extend((0..len).map(|k| (i as usize * 31 + k * 17) as u8));
    v
}

/// A log of `n` records `message(0..n)`; returns its id and the records'
/// positions.
fn make_log(dir: &Path, n: u64) -> (tidelog::LogId, Vec<u64>) {
    let log = tidelog::Log::open(dir).unwrap();
    let mut a = log.appender().unwrap();
    let positions = (0..n)
        .map(|i| a.append(&message(i)).unwrap().get())
        .collect();
    (log.id(), positions)
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run tidelog")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "tidelog {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// splitmix64, seeded from the clock (printed, to replay a failure).
struct Rng(u64);

impl Rng {
    fn new(what: &str) -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        note(format!("{what}: seed {seed}"));
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// Runs `args` in a process and SIGKILLs it after `after`; whether it was
/// still running then.
fn kill_after(args: &[&str], after: Duration) -> bool {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

/// The stream holds exactly the log's records, once each, in order, each
/// with its bytes and the message id of its position.
fn assert_stream_is_log(stored: &[Stored], id: tidelog::LogId, positions: &[u64]) {
    assert_eq!(stored.len(), positions.len(), "messages in the stream");
    for (i, ((_, mid, payload), pos)) in stored.iter().zip(positions).enumerate() {
        assert_eq!(
            mid.as_deref(),
            Some(format!("{id}:{pos}").as_str()),
            "message {i}'s id"
        );
        assert_eq!(payload, &message(i as u64), "message {i}'s bytes");
    }
}

const N: u64 = 200_000;

#[test]
fn forward_killed_at_random_moments_publishes_every_record_once_in_order() {
    if !have_server() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (id, positions) = make_log(&dir, N);
    let server = Server::start(tmp.path(), "solo", "");
    wait_for_jetstream(&server.url());
    let url = server.url();
    let d = dir.to_str().unwrap();
    let args = [
        "forward",
        d,
        "--server",
        &url,
        "--stream",
        "LOG",
        "--subject",
        "log.a",
    ];
    let mut rng = Rng::new("forward kills");
    let mut killed_mid_run = 0;
    // Short lives, until a dozen were cut with the stream partial.
    for _ in 0..60 {
        if kill_after(&args, Duration::from_millis(20 + rng.below(130))) {
            let n = read_stream(&url, "LOG").len() as u64;
            if n > 0 && n < N {
                killed_mid_run += 1;
            }
        }
        if killed_mid_run == 12 {
            break;
        }
    }
    let out = ok(&args);
    note(format!(
        "{killed_mid_run} forwarders killed mid-stream; last run: {}",
        out.trim()
    ));
    assert!(
        killed_mid_run >= 10,
        "the forwarder was not killed while it ran"
    );
    assert_stream_is_log(&read_stream(&url, "LOG"), id, &positions);
}

#[test]
fn ingest_killed_at_random_moments_appends_every_message_once_in_order() {
    if !have_server() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), "solo", "");
    wait_for_jetstream(&server.url());
    let url = server.url();
    publish(&url, "IN", "in.a", N);
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    let args = ["ingest", "--server", &url, "--stream", "IN", d];
    let mut rng = Rng::new("ingest kills");
    let mut killed_mid_run = 0;
    let count = || records_in(&dir);
    // Ingesting is fast (a few hundred thousand messages a second): short
    // lives, until a dozen were cut mid-stream.
    for _ in 0..60 {
        if kill_after(&args, Duration::from_millis(10 + rng.below(50))) {
            let n = count();
            if n > 0 && n < N {
                killed_mid_run += 1;
            }
        }
        if killed_mid_run == 12 {
            break;
        }
    }
    let out = ok(&args);
    note(format!(
        "{killed_mid_run} ingests killed mid-stream; last run: {}",
        out.trim()
    ));
    assert!(
        killed_mid_run >= 10,
        "the ingest was not killed while it ran"
    );
    let log = tidelog::Log::open_read_only(&dir).unwrap();
    let mut r = log.reader();
    let mut n = 0u64;
    while let Some(rec) = r.try_next().unwrap() {
        assert_eq!(rec.tag(), Some(n + 1), "stream sequence of record {n}");
        assert_eq!(rec.as_bytes(), &message(n)[..], "bytes of record {n}");
        n += 1;
    }
    assert_eq!(n, N);
    // Run again: nothing new, nothing appended.
    assert!(ok(&args).starts_with("ingested 0 records"));
}

/// The records of the log at `dir` (0 if there is none yet).
fn records_in(dir: &Path) -> u64 {
    let Ok(log) = tidelog::Log::open_read_only(dir) else {
        return 0;
    };
    let mut r = log.reader();
    std::iter::from_fn(|| r.try_next().unwrap().map(|_| ())).count() as u64
}

/// Waits until the log at `dir` holds `n` records.
fn wait_for_records(dir: &Path, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = records_in(dir);
        if have >= n {
            assert_eq!(have, n, "more records than messages");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{have} of {n} records after a minute"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ingest_follows_a_stream_through_a_server_restart() {
    if !have_server() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), "solo", "");
    wait_for_jetstream(&server.url());
    let url = server.url();
    publish_range(&url, Some("IN"), "in.a", 0..20_000);
    let dir = tmp.path().join("log");
    let mut ingest = Command::new(BIN)
        .args(["ingest", "-f", "--server", &url, "--stream", "IN"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_records(&dir, 20_000);
    server.kill();
    std::thread::sleep(Duration::from_millis(1500));
    server.restart();
    wait_for_jetstream(&url);
    publish_range(&url, None, "in.a", 20_000..40_000);
    wait_for_records(&dir, 40_000);
    assert!(
        ingest.try_wait().unwrap().is_none(),
        "a following ingest stopped"
    );
    let _ = ingest.kill();
    let _ = ingest.wait();
    let log = tidelog::Log::open_read_only(&dir).unwrap();
    let mut r = log.reader();
    for i in 0..40_000u64 {
        let rec = r.try_next().unwrap().unwrap();
        assert_eq!(rec.tag(), Some(i + 1));
        assert_eq!(rec.as_bytes(), &message(i)[..]);
    }
    assert!(r.try_next().unwrap().is_none());
}

#[test]
fn forward_outlives_a_server_killed_and_restarted_on_its_store() {
    if !have_server() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (id, positions) = make_log(&dir, N);
    let mut server = Server::start(tmp.path(), "solo", "");
    wait_for_jetstream(&server.url());
    let url = server.url();
    let mut fwd = Command::new(BIN)
        .args([
            "forward",
            dir.to_str().unwrap(),
            "--server",
            &url,
            "--stream",
            "LOG",
            "--subject",
            "log.a",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once part of the log is in the stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = runtime().block_on(async {
            let c = async_nats::connect(&url).await.ok()?;
            let mut s = jetstream::new(c).get_stream("LOG").await.ok()?;
            Some(s.info().await.ok()?.state.messages)
        });
        if n.is_some_and(|n| n > 10_000) {
            break;
        }
        assert!(Instant::now() < deadline, "the forward did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    assert!(
        fwd.try_wait().unwrap().is_none(),
        "the forward finished before the server was killed"
    );
    std::thread::sleep(Duration::from_millis(1500));
    server.restart();
    let out = fwd.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "forward failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    note(format!("after the restart: {}", stdout.trim()));
    assert!(
        !stdout.contains(" 0 restarts"),
        "it never lost the server: {stdout}"
    );
    wait_for_jetstream(&url);
    assert_stream_is_log(&read_stream(&url, "LOG"), id, &positions);
}

#[test]
fn forward_completes_on_a_three_node_cluster_that_loses_a_node() {
    if !have_server() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (id, positions) = make_log(&dir, N);
    let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes = route_ports
        .iter()
        .map(|p| format!("nats-route://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut nodes: Vec<Server> = (0..3)
        .map(|i| {
            Server::start_on(
                tmp.path(),
                &format!("n{i}"),
                client_ports[i],
                &format!(
                    "cluster {{ name: tide, listen: 127.0.0.1:{}, routes: [{routes}] }}",
                    route_ports[i]
                ),
            )
        })
        .collect();
    for n in &nodes {
        wait_for_jetstream(&n.url());
    }
    let urls = nodes.iter().map(Server::url).collect::<Vec<_>>().join(",");
    let mut fwd = Command::new(BIN)
        .args([
            "forward",
            dir.to_str().unwrap(),
            "--server",
            &urls,
            "--stream",
            "LOG",
            "--subject",
            "log.a",
            "--replicas",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once part of the log is in, kill the stream's leader.
    let url0 = nodes[0].url();
    let deadline = Instant::now() + Duration::from_secs(60);
    let leader = loop {
        let seen = runtime().block_on(async {
            let c = async_nats::connect(&url0).await.ok()?;
            let mut s = jetstream::new(c).get_stream("LOG").await.ok()?;
            let info = s.info().await.ok()?;
            let leader = info.cluster.as_ref()?.leader.clone()?;
            Some((info.state.messages, leader))
        });
        if let Some((n, leader)) = seen {
            if n > 10_000 {
                break leader;
            }
        }
        assert!(Instant::now() < deadline, "the forward did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let victim = nodes.iter().position(|n| n.name == leader).unwrap();
    nodes[victim].kill();
    assert!(
        fwd.try_wait().unwrap().is_none(),
        "the forward finished before the node was killed"
    );
    let out = fwd.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "forward failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    note(format!(
        "killed the leader {leader}; {}",
        String::from_utf8_lossy(&out.stdout).trim()
    ));
    // Every surviving node serves the whole stream, and says so.
    for (i, n) in nodes.iter().enumerate() {
        if i == victim {
            continue;
        }
        assert_stream_is_log(&read_stream(&n.url(), "LOG"), id, &positions);
        let messages = runtime().block_on(async {
            let c = async_nats::connect(n.url()).await.ok()?;
            let mut s = jetstream::new(c).get_stream("LOG").await.ok()?;
            Some(s.info().await.ok()?.state.messages)
        });
        // (Already read in full through this node just above.)
        if let Some(m) = messages {
            assert_eq!(m, N, "node {} counts", n.name);
        }
    }
}

#[test]
fn a_log_forwarded_and_ingested_comes_back_record_for_record() {
    if !have_server() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    {
        let log = tidelog::Log::open(&a).unwrap();
        let mut ap = log.appender().unwrap();
        ap.append(b"").unwrap();
        ap.append(&[0xFF; 100_000]).unwrap();
        for i in 0..20_000 {
            ap.append(&message(i)).unwrap();
        }
        ap.append(b"\n\r\0 the end").unwrap();
    }
    let server = Server::start(tmp.path(), "solo", "");
    wait_for_jetstream(&server.url());
    let url = server.url();
    let (ad, bd) = (a.to_str().unwrap(), b.to_str().unwrap());
    ok(&[
        "forward",
        ad,
        "--server",
        &url,
        "--stream",
        "RT",
        "--subject",
        "rt",
    ]);
    ok(&["ingest", "--server", &url, "--stream", "RT", bd]);
    let la = tidelog::Log::open_read_only(&a).unwrap();
    let lb = tidelog::Log::open_read_only(&b).unwrap();
    let (mut ra, mut rb) = (la.reader(), lb.reader());
    let mut n = 0u64;
    loop {
        match (ra.try_next().unwrap(), rb.try_next().unwrap()) {
            (Some(x), Some(y)) => {
                assert_eq!(x.as_bytes(), y.as_bytes(), "record {n}");
                assert_eq!(y.tag(), Some(n + 1));
                n += 1;
            }
            (None, None) => break,
            (x, y) => panic!(
                "one log ends first at {n}: {:?} {:?}",
                x.is_some(),
                y.is_some()
            ),
        }
    }
    assert_eq!(n, 20_003);
}

#[test]
fn exactly_once_does_not_lean_on_the_duplicate_window() {
    if !have_server() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (id, positions) = make_log(&dir, 5_000);
    let server = Server::start(tmp.path(), "solo", "");
    wait_for_jetstream(&server.url());
    let url = server.url();
    // A stream whose duplicate window is 200 ms.
    runtime().block_on(async {
        let c = async_nats::connect(&url).await.unwrap();
        jetstream::new(c)
            .create_stream(stream::Config {
                name: "LOG".to_owned(),
                subjects: vec!["log.a".to_owned()],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_millis(200),
                ..Default::default()
            })
            .await
            .unwrap();
    });
    let d = dir.to_str().unwrap();
    let args = [
        "forward",
        d,
        "--server",
        &url,
        "--stream",
        "LOG",
        "--subject",
        "log.a",
    ];
    ok(&args);
    // The consumer's commits are lost (reset to the start) and the window
    // has passed: the stream's last message alone says what is there.
    ok(&["consumers", d, "reset", "nats-forward", "--to", "start"]);
    std::thread::sleep(Duration::from_millis(500));
    let out = ok(&args);
    assert!(
        out.starts_with("forwarded 0 records") && out.contains("5000 already in the stream"),
        "{out}"
    );
    // New records after that go on in order.
    let log = tidelog::Log::open(&dir).unwrap();
    let mut positions = positions;
    let mut ap = log.appender().unwrap();
    for i in 5_000..5_100 {
        positions.push(ap.append(&message(i)).unwrap().get());
    }
    ok(&args);
    assert_stream_is_log(&read_stream(&url, "LOG"), id, &positions);
}

#[test]
fn permanent_errors_stop_the_bridge_with_a_clear_message() {
    if !have_server() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let d = dir.to_str().unwrap();
    {
        let log = tidelog::Log::open(&dir).unwrap();
        log.appender().unwrap().append(&[7; 8000]).unwrap();
    }
    let server = Server::start(
        tmp.path(),
        "auth",
        "max_payload: 4096\nauthorization { users: [\
         { user: tide, password: s3cret },\
         { user: reader, password: r3ader, permissions: { publish: { deny: [\"$JS.API.STREAM.CREATE.>\"] } } }\
         ] }",
    );
    let good = format!("nats://tide:s3cret@127.0.0.1:{}", server.port);
    wait_for_jetstream(&good);
    let fails = |args: &[&str], expect: &str| {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    };
    // Wrong password.
    let bad = format!("nats://tide:wrong@127.0.0.1:{}", server.port);
    fails(
        &[
            "forward",
            d,
            "--server",
            &bad,
            "--stream",
            "S",
            "--subject",
            "s",
        ],
        "cannot connect",
    );
    fails(
        &["ingest", "--server", &bad, "--stream", "S", d],
        "cannot connect",
    );
    // A missing stream, not to be created.
    fails(
        &[
            "forward",
            d,
            "--server",
            &good,
            "--stream",
            "S",
            "--subject",
            "s",
            "--no-create",
        ],
        "stream S does not exist",
    );
    fails(
        &["ingest", "--server", &good, "--stream", "S", d],
        "stream S does not exist",
    );
    // A missing stream that this user may not create.
    let reader = format!("nats://reader:r3ader@127.0.0.1:{}", server.port);
    fails(
        &[
            "forward",
            d,
            "--server",
            &reader,
            "--stream",
            "S",
            "--subject",
            "s",
        ],
        "stream S does not exist: creating it failed",
    );
    // A record larger than the server's max_payload.
    fails(
        &[
            "forward",
            d,
            "--server",
            &good,
            "--stream",
            "S",
            "--subject",
            "s",
        ],
        "8000 bytes",
    );
    // A stream that is not the forwarder's alone.
    publish(&good, "OTHER", "other.>", 1);
    fails(
        &[
            "forward",
            d,
            "--server",
            &good,
            "--stream",
            "OTHER",
            "--subject",
            "other.x",
        ],
        "does not fit",
    );
}

#[test]
fn streams_that_lost_records_or_were_made_anew_are_refused() {
    if !have_server() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let (id, positions) = make_log(&dir, 2_000);
    let server = Server::start(tmp.path(), "solo", "");
    wait_for_jetstream(&server.url());
    let url = server.url();
    // A stream whose duplicate window is 300 ms.
    runtime().block_on(async {
        let c = async_nats::connect(&url).await.unwrap();
        jetstream::new(c)
            .create_stream(stream::Config {
                name: "LOG".to_owned(),
                subjects: vec!["log.a".to_owned()],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_millis(300),
                ..Default::default()
            })
            .await
            .unwrap();
    });
    let d = dir.to_str().unwrap();
    let args = [
        "forward",
        d,
        "--server",
        &url,
        "--stream",
        "LOG",
        "--subject",
        "log.a",
    ];
    ok(&args);
    // The stream loses its last 10 messages, which the consumer committed.
    runtime().block_on(async {
        let c = async_nats::connect(&url).await.unwrap();
        let s = jetstream::new(c).get_stream("LOG").await.unwrap();
        for seq in 1_991..=2_000 {
            assert!(s.delete_message(seq).await.unwrap());
        }
    });
    let out = run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("missing from the stream"), "{err}");
    // Doing what the message says publishes them again, in order.
    let reset_to = positions[1_990].to_string();
    assert!(err.contains(&format!("--to {reset_to}")), "{err}");
    std::thread::sleep(Duration::from_millis(500));
    ok(&["consumers", d, "reset", "nats-forward", "--to", &reset_to]);
    ok(&args);
    let stored = read_stream(&url, "LOG");
    assert_stream_is_log(&stored, id, &positions);
    // After the deleted sequences, not in their place.
    assert_eq!(stored[1_990].0, 2_001);

    // Ingest: a log that holds messages up to 2,000 of a stream made anew
    // with fewer is refused, not silently behind.
    let copy = tmp.path().join("copy");
    let c = copy.to_str().unwrap();
    ok(&["ingest", "--server", &url, "--stream", "LOG", c]);
    runtime().block_on(async {
        let cl = async_nats::connect(&url).await.unwrap();
        assert!(
            jetstream::new(cl)
                .delete_stream("LOG")
                .await
                .unwrap()
                .success
        );
    });
    publish(&url, "LOG", "log.a", 5);
    let out = run(&["ingest", "--server", &url, "--stream", "LOG", c]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("made anew"), "{err}");
}
